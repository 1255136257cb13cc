"""Models: presets and loading with quantization decided once (`models`), the two
approaches found by name (`approaches`), LoRA on a base (`lora`), and token batches
(`batching`).

Layer 3: imports the layers below (config, system, data, labels), never training,
evaluation, inference or the app."""
