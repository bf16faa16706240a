"""Vendor clients: one module per vendor, each a thin translation over ``http.HttpProvider``."""
