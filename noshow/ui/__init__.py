"""The Gradio app, one module per tab; `build_demo` lays them out (see noshow/ui/app.py).

from noshow.ui import build_demo
demo = build_demo(jobs=JobManager(), store=None)
demo.launch(**style_kwargs())
"""

from noshow.ui.app import build_demo, style_kwargs

__all__ = ["build_demo", "style_kwargs"]
