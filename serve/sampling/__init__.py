"""Offline sampling: seeds in, shards out (npz or PNG), pipelined, resumable and split across torchrun ranks."""
