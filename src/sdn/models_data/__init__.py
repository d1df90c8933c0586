"""Package data, not code: one folder per trained model that ships (see sdn.pretrained).

    <name>/generator.safetensors   bf16 weights, configuration in the metadata (<= 30 MB)
    <name>/generator.json          the configuration
    <name>/MODEL_CARD.md           data, training, hours, metrics, limits

Made by `python scripts/package_model.py RUN NAME`; listed by `sdn models`.
"""
