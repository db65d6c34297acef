"""northstar: a live monitor for a North Star metric system."""
__version__ = "0.1.0"
