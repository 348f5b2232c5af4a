"""unisp: tiny learned ISPs trained from unpaired RAW and RGB collections."""
__version__ = "0.1.0"
