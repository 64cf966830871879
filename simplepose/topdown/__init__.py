"""Top-down Simple Baselines + attention: one heatmap per keypoint for each person box's crop."""
