"""Networks: bottom-up Simple Pose (VGG19 + stages) and top-down Simple Baselines (+ attention)."""
