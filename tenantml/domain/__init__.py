"""The domain: plain Python, no framework imports."""
