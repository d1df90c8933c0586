"""Data: read a dataset's files, cache them once as tensors, make the synthetic demo set, and turn
captioned images into training batches. Imports nothing here, so `sdn sample` loads only the modules it uses."""
