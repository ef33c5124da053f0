"""What stands in for what a developer cannot have here: the synthetic sample data and the tiny models built offline."""
