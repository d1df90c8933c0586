"""`sdn serve`: a local web page (Gradio) to draw typed captions and to rank models by hand.

models: loading once and request checks; app: the drawing page and the server; rank_page,
ranking_db, rank_report: the paper's Table 2 human ranking. Gradio is imported only by app and
rank_page (the optional `web` extra), so the rest works without it.
"""
