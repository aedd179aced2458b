"""Bilingual ML paper digests → archive site, Atom/RSS feeds and a daily email."""

__version__ = "0.1.0"
