"""What the package needs from the machine, below every other layer: files written
atomically (`files`), the device and its memory (`devices`), third-party noise turned off
(`quiet`), secrets kept out of files and messages (`redact`), the repository's folders
(`paths`). Imports nothing from noshow but `noshow.config`."""
