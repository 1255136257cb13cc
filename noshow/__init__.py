"""noshow: fine-tune Llama-family models with QLoRA to predict appointment no-shows.

The package is built in layers; a module imports only from its own layer and the layers
below it (tests/test_architecture.py enforces this and the absence of import circles):

    app          the Gradio tabs and their views                        (7)
    inference    predict, serve, CPU engines, ship with a model card    (6)
    training     recipe, run folders, loop, step engines, jobs          (5)
    evaluation   metrics with intervals, calibration, baseline, hybrid  (4)
    modeling     presets and loading, approaches, LoRA, batching        (3)
    labels       clinician labels: store, queue, agreement, export      (2)
    data         file -> checked frame -> statements; the split policy  (1)
    system, config   files, devices, library noise; the options         (0)
"""
