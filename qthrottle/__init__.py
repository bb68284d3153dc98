"""qthrottle"""
