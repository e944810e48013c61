"""Presentation: pages that render finished results as self-contained HTML (never computing)."""
