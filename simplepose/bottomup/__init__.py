"""Bottom-up Simple Pose: keypoint and limb maps for the whole image, grouped into people by the decoder."""
