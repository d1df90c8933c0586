"""Networks: the frozen teachers (and their fused and resized views), SDN's generator, the caption
encoders, and the classifiers that score drawings. Imports nothing here, so `sdn sample` loads only the modules it uses."""
