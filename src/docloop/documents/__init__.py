"""Documents: the synthetic corpus, preprocessing (render, text layer, OCR) and page records."""
