"""refinery: the library behind the pipeline. It imports neither prefect nor dvc."""
__version__ = "0.1.0"
