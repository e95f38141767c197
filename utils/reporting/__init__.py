"""What a person sees: visdom plots, CSV/JSON run records, image grids."""
