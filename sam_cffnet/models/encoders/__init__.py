"""The frozen SAM image encoder with multi-level feature taps, and its speed options."""
