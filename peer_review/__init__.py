"""peer_review"""
