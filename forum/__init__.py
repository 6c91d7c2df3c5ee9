"""forum"""
