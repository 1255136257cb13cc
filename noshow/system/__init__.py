"""What the package needs from the machine, below every other layer: files written
atomically (`files`), the device and its memory (`devices`), third-party noise turned off
(`quiet`). Imports nothing from noshow but `noshow.config`."""
