"""Fields shared by every experiment config, each declared once with its meaning.

Experiment files start from `base_config()`, change what they need and return
`lock(config)`, so a misspelt `--config.x.y=...` override fails at once.
"""

import ml_collections

from lm.errors import ConfigError


def parse_variant(arg: str | None, variants: tuple[str, ...], *, default: str) -> str:
  """The variant named after ':' in `--config=file.py:VARIANT`, checked against `variants`."""
  variant = arg or default
  if variant not in variants:
    raise ConfigError(f"unknown config variant {variant!r}; known: {', '.join(variants)}")
  return variant


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # Seeds params init, dropout and the data order.
  c.allow_config_change = False  # Resume a workdir whose saved config differs from this one.

  c.stage = "pretrain"  # decoder: 'pretrain' (text windows), 'sft', 'dpo' (any preference loss), 'reward'; encoder: 'mlm', 'classify'; encoder_decoder: 'span_corruption', 'seq2seq' (lm.families).
  c.init_from = ml_collections.FieldReference(None, field_type=str)  # Workdir whose latest params (and tokenizer) start this run; None: fresh init.

  c.data = ml_collections.ConfigDict()
  c.data.source = "tiny_shakespeare"  # 'tiny_shakespeare' (TFDS, TF-free), 'ptb' (Mikolov's files; manual_dir holds them offline) or 'text' (a file).
  c.data.data_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS data dir; None: $TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.data.manual_dir = ml_collections.FieldReference(None, field_type=str)  # Offline input.txt dir; None: <data_dir>/downloads/manual.
  c.data.text_file = ml_collections.FieldReference(None, field_type=str)  # For source 'text': one UTF-8 file split by fractions.
  c.data.split_fractions = (0.9, 0.05, 0.05)  # For source 'text': train/validation/test shares.
  c.data.tokenizer = "char"  # 'char' (training split's characters), 'byte' (UTF-8), 'word' (whitespace, <eos> per line) or 'sentencepiece' (BPE trained on the training split).
  c.data.vocab_size = ml_collections.FieldReference(None, field_type=int)  # 'word': most frequent words kept (None: all); 'sentencepiece': required.
  c.data.context = 64  # Tokens per training window (the model's maximum length).
  c.data.special_tokens = ("<bos>", "<eos>", "<pad>")  # Byte tokenizer: special tokens (ids 256...), e.g. chat-template markers; char: with char_specials.
  c.data.char_specials = False  # Char tokenizer: add data.special_tokens after the characters (mask, sentinels).

  c.model = ml_collections.ConfigDict()  # Fields of lm.models.config.ModelConfig.
  c.model.num_layers = 4  # Transformer blocks.
  c.model.num_heads = 4  # Query heads.
  c.model.num_kv_heads = ml_collections.FieldReference(None, field_type=int)  # None: multi-head; fewer: grouped-query.
  c.model.width = 128  # Residual stream width.
  c.model.head_dim = ml_collections.FieldReference(None, field_type=int)  # None: width / heads.
  c.model.mlp_width = ml_collections.FieldReference(None, field_type=int)  # None: 4x width (gelu), 8/3x (swiglu).
  c.model.position = "learned"  # 'learned' absolute table, 'rope', or 'relative' (T5 bias; encoder families).
  c.model.rope_theta = 10_000.0  # Rotary base frequency.
  c.model.norm = "layernorm"  # 'layernorm' or 'rmsnorm'.
  c.model.norm_eps = 1e-5  # Added to the variance in norms.
  c.model.mlp = "gelu"  # 'gelu' (tanh), 'gelu_exact' (erf, BERT), 'relu' (T5), 'swiglu', 'geglu' (T5 v1.1).
  c.model.tie_embeddings = True  # Output projection = transposed token embedding.
  c.model.use_bias = False  # Biases on dense layers and LayerNorm.
  c.model.dropout = 0.0  # Dropout rate on embeddings, attention and residual branches.
  c.model.dtype = "float32"  # Compute dtype: 'float32' or 'bfloat16'.
  c.model.param_dtype = "float32"  # Parameter storage dtype (master weights).
  c.model.init_std = 0.02  # Init std of weights; residual outputs scaled by 1/sqrt(2 layers).
  c.model.remat = "none"  # Recompute block activations in the backward pass: 'none', 'full' or 'dots_saveable' (keep matmul outputs).
  c.model.scan_layers = False  # One lax.scan over the blocks (fast compiles; params stacked on a leading 'layers' axis, so checkpoints differ).
  c.model.max_len = c.data.get_ref("context")  # Follows data.context.
  c.model.family = "decoder"  # 'decoder' (GPT), 'encoder' (BERT) or 'encoder_decoder' (T5).
  c.model.num_encoder_layers = ml_collections.FieldReference(None, field_type=int)  # encoder_decoder: encoder blocks; None: num_layers.
  c.model.norm_position = "pre"  # 'pre' x + f(norm(x)), or 'post' norm(x + f(x)) (BERT).
  c.model.embed_norm = False  # Norm on the summed embeddings (BERT).
  c.model.type_vocab_size = 0  # Token-type (segment) embeddings; 0: none.
  c.model.scale_attention = True  # Attention logits / sqrt(head_dim); False for T5.
  c.model.relative_buckets = 32  # position 'relative': T5 bias buckets.
  c.model.relative_max_distance = 128  # position 'relative': largest distinguished offset.
  c.model.scale_tied_logits = False  # encoder_decoder: hidden * width**-0.5 before a tied output (T5).
  c.model.mlm_transform = False  # Encoder MLM head: dense + activation + norm first (BERT).
  c.model.pooling = "first"  # Encoder sequence classifier: 'first' token or 'mean'.
  c.model.pooler = False  # Sequence classifier: dense + tanh on the pooled vector (BERT).

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "cross_entropy"  # A loss in lm.losses.LOSSES.
  c.loss.label_smoothing = 0.0  # Mass spread uniformly over the vocabulary.
  c.loss.z_loss = 0.0  # Coefficient of log(Z)^2 (PaLM uses 1e-4).
  c.loss.per_sequence = False  # True: each sequence weighs the same; False: each token.

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1e-3  # Peak learning rate.
  c.optim.min_lr = 1e-4  # Learning rate at the end of the cosine decay.
  c.optim.warmup_steps = 100  # Linear warmup from 0.
  c.optim.decay_steps = ml_collections.FieldReference(None, field_type=int)  # Cosine length; None: train.steps.
  c.optim.b1 = 0.9  # Adam beta1.
  c.optim.b2 = 0.99  # Adam beta2.
  c.optim.eps = 1e-8  # Adam epsilon.
  c.optim.weight_decay = 0.1  # Decoupled weight decay on matrices only.
  c.optim.clip_norm = ml_collections.FieldReference(1.0, field_type=float)  # Global-norm clip; None: off.

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 12  # Sequences per optimizer step (all micro-batches together).
  c.train.accum_steps = 1  # Micro-batches per step (gradient accumulation).
  c.train.steps = 2000  # Optimizer steps.
  c.train.log_every = 50  # Steps between train-metric records.
  c.train.eval_every = 250  # Steps between full validation passes; also at the end.
  c.train.checkpoint_every = 500  # Steps between checkpoints; also at the end.
  c.train.keep_checkpoints = 3  # Newest checkpoints kept on disk.
  c.train.nonfinite = "stop"  # Non-finite loss/grads: 'stop' (error naming the step) or 'skip'.
  c.train.inject_nonfinite_at = ml_collections.FieldReference(None, field_type=int)  # Tests only: NaN grads at this step.

  c.train.peak_flops = ml_collections.FieldReference(None, field_type=float)  # Per-device peak FLOP/s for MFU; None: lm.throughput's table by device kind (CPU: a measured matmul).

  c.mesh = ml_collections.ConfigDict()  # Device mesh and sharding rules (see lm.sharding).
  c.mesh.shape = ml_collections.FieldReference(None, field_type=str)  # e.g. 'data:2,fsdp:2,tensor:2'; sizes multiply to the device count; None: 'data' over every device.
  c.mesh.rules = ml_collections.ConfigDict()  # Param logical axis -> mesh axes ("fsdp", "data,fsdp"); "" keeps it whole on every device. Batches always split over data and fsdp.
  c.mesh.rules.length = ""  # Sequence positions (and the learned position table).
  c.mesh.rules.vocab = "tensor"  # Token embedding and output projection rows.
  c.mesh.rules.embed = "fsdp"  # Residual width of every weight matrix (FSDP shards params here).
  c.mesh.rules.heads = "tensor"  # Query heads (tensor parallel attention).
  c.mesh.rules.kv_heads = "tensor"  # Key/value heads.
  c.mesh.rules.head_dim = ""  # Dimensions within a head.
  c.mesh.rules.mlp = "tensor"  # MLP hidden units (tensor parallel MLP).
  c.mesh.rules.layers = ""  # The stacked-blocks axis of model.scan_layers.
  c.mesh.rules.relpos_buckets = ""  # Relative-position buckets (encoder families).
  c.mesh.rules.classes = ""  # Classifier outputs (encoder families).

  c.eval = ml_collections.ConfigDict()
  c.eval.split = "validation"  # Split scored during and after training.
  c.eval.batch_size = 64  # Windows per eval batch.
  c.eval.max_batches = ml_collections.FieldReference(None, field_type=int)  # None: the whole split.

  c.align = ml_collections.ConfigDict()  # Stages 'sft', 'dpo', 'reward' (see lm.stages).
  c.align.train_file = ml_collections.FieldReference(None, field_type=str)  # JSON/JSONL: Alpaca or 'messages' (sft); prompt/chosen/rejected or HH (dpo, reward).
  c.align.eval_file = ml_collections.FieldReference(None, field_type=str)  # Held-out file; None: hold out align.eval_fraction of train_file.
  c.align.eval_fraction = 0.1  # Share of train_file held out (fixed order) when eval_file is None.
  c.align.packing = False  # sft: pack several examples per row (segment-masked attention).
  c.align.truncation = "error"  # Longer than data.context: 'error', 'drop' (counted) or 'truncate' (counted).
  c.align.loss = "dpo"  # dpo: a loss in lm.losses.PREFERENCE_LOSSES.
  c.align.beta = 0.1  # dpo: beta (IPO: tau; ORPO: lambda; SimPO: reward scale).
  c.align.label_smoothing = 0.0  # cdpo / robust_dpo: assumed label-flip rate eps.
  c.align.gamma = 0.0  # simpo: target reward margin.
  c.align.template = ml_collections.ConfigDict()  # Chat template; '{content}' marks the message.
  c.align.template.bos = ""  # Text before the first turn ('<bos>' for the byte tokenizer).
  c.align.template.system = "{content}\n\n"  # A system message.
  c.align.template.user = "### Instruction:\n{content}\n\n"  # A user message.
  c.align.template.assistant = "### Response:\n{content}\n\n"  # Before '{content}': prompt; the rest is trained.

  c.task = ml_collections.ConfigDict()  # Encoder and encoder-decoder stages (lm.families).
  c.task.mask_rate = 0.15  # mlm: share of tokens selected (then 80% mask, 10% random, 10% kept).
  c.task.noise_density = 0.15  # span_corruption: share of tokens in noise spans.
  c.task.mean_span = 3.0  # span_corruption: mean noise span length.
  c.task.train_file = ml_collections.FieldReference(None, field_type=str)  # classify: CSV (text,label header) or JSONL.
  c.task.eval_file = ml_collections.FieldReference(None, field_type=str)  # classify: held-out file; None: task.eval_fraction of train_file.
  c.task.eval_fraction = 0.1  # classify: share of train_file (or the TFDS train split) held out when eval_file (tfds_eval_split) is None.
  c.task.builtin = ml_collections.FieldReference(None, field_type=str)  # classify without files: 'real_vs_shuffled' lines of data.source.
  c.task.tfds_name = ml_collections.FieldReference(None, field_type=str)  # classify: a TFDS dataset already prepared as array_record in data.data_dir (e.g. 'imdb_reviews'), read without TensorFlow; wins over task.builtin, excludes task.train_file.
  c.task.tfds_train_split = "train"  # classify with tfds_name: split to train on (TFDS syntax, e.g. 'train[:10%]').
  c.task.tfds_eval_split = ml_collections.FieldReference("test", field_type=str)  # classify with tfds_name: held-out split; None: task.eval_fraction of the train split.
  c.task.text_feature = "text"  # classify with tfds_name: the Text feature holding the input.
  c.task.label_feature = "label"  # classify with tfds_name: the ClassLabel feature; its names are the label set (unless task.labels).
  c.task.labels = ()  # classify: the label set; (): sorted labels of the training file.
  c.task.truncation = "error"  # classify: text longer than data.context: 'error' or 'truncate' (counted).
  c.task.seq2seq = "reverse"  # seq2seq: a task in lm.data.seq2seq.TASKS ('reverse', 'sort').
  c.task.alphabet = "abcdefghijklmnopqrstuvwxyz"  # seq2seq: characters of the random strings.
  c.task.min_len = 1  # seq2seq: shortest random string.
  c.task.max_len = 12  # seq2seq: longest random string (< data.context).
  c.task.num_eval = 500  # seq2seq: held-out strings (never trained on).
  c.task.beam_size = 4  # seq2seq: beams of the final beam-search exact match.

  c.sample = ml_collections.ConfigDict()
  c.sample.prompt = "\n"  # Text the sample after training continues.
  c.sample.num_tokens = 200  # New tokens in that sample.
  c.sample.temperature = 0.8  # Softmax temperature; 0 is greedy.
  return c


def lock(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.lock()
  return c
