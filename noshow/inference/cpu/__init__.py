"""Scoring on a CPU: which kind of CPU this is (`features`), which engine scores on it
(`choice`, from the measured `engine_table.json`), the engines (`engines`: ONNX Runtime,
OpenVINO, torch int8 over the exportable `graph`; the hand-written fused `forward`), putting
the chosen one behind a decoder (`runtime`), the weights' transforms (`weights`) and the one
thread all CPU model work runs on (`thread`)."""
