"""Command-line helpers around the templates: params files, checks, deploy steps."""
