"""Running the platform: connections from settings, and the embedded local platform."""
