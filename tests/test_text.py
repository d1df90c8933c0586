import pytest
import torch

from sdn.errors import UserError
from sdn.text import MiniLMEncoder, check_captions, encode_unique


def test_minilm_encoder_is_real_and_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = MiniLMEncoder()
    assert (enc.name, enc.dim) == ("all-minilm-l6-v2", 384)
    e = enc.encode(["a red flower with round petals", "a crimson flower with rounded petals", "a blue car on a road"])
    assert e.shape == (3, 384) and e.dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity
    assert cos(e[0], e[1], 0) > cos(e[0], e[2], 0) + 0.2  # a real sentence encoder, not noise


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_captions_are_refused(bad):
    with pytest.raises(UserError, match="empty caption"):
        check_captions(["fine", bad])


def test_encode_unique_encodes_each_caption_once():
    calls = []

    class Counting:
        name, dim = "counting", 2

        def encode(self, caps):
            calls.append(list(caps))
            return torch.tensor([[len(c), 0.0] for c in caps])

    out = encode_unique(Counting(), ["ab", "abc", "ab", " ab "])
    assert calls == [["ab", "abc"]]
    assert out[:, 0].tolist() == [2, 3, 2, 2]
