"""Data: COCO reading, HDF5 storage, synthetic COCO, augmentation, targets and input pipelines."""
