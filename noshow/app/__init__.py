"""The Gradio app, one module per tab (`*_tab`: layout and wiring) and the functions
behind them (`*_views`, no Gradio); `demo.build_demo` lays the tabs out.

Layer 7, the top: may import every layer below.

from noshow.app import build_demo
demo = build_demo(jobs=JobManager(), store=None)
demo.launch(**style_kwargs())
"""

from noshow.app.demo import build_demo, style_kwargs

__all__ = ["build_demo", "style_kwargs"]
