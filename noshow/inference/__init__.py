"""Using a trained adapter: load and score it (`predict`), serve many users on one machine
(`scheduler`: shared forwards, background chunks; `serving`: what the tabs call), the CPU
engines (`cpu/`), and ship it (`ship`) with its model card (`model_card`).

Layer 6: imports every layer below; never the app."""
