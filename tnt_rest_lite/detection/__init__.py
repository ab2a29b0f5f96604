"""Layer 4, detection: FPN backbones from our classifiers, torchvision's detectors, COCO evaluation."""
