"""Science code: numpy/astropy/torch algorithms. Nothing here imports Dagster."""
