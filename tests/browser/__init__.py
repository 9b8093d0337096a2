"""Real-browser tests of the dashboard (Debian Chromium through Playwright)."""
