"""mullama: a transparent local LLM serving layer over llama.cpp."""

__version__ = "0.1.0"
