"""Every default in one place, each with the reason for its value."""

from __future__ import annotations

import platformdirs

#: where the ledger, index, broker folder and token live unless SLEEPD_HOME says otherwise: the
#: user's data folder (~/.local/share/sleepd on Linux), the same whatever folder a command runs in
HOME = str(platformdirs.user_data_path("sleepd"))
#: config file looked for in the working directory, then in the home folder
CONFIG_NAME = "sleepd.toml"
#: seconds without a query before the system counts as idle and enrichment may run
IDLE_SECONDS = 10.0
#: a change waits for idle time at most this long, then it is enriched whatever the load (the
#: worker is niced): idle-awareness bounds staleness, it never suspends enrichment
MAX_STALENESS_SECONDS = 60.0
#: a waiting change is handed out once it is this share of its source's maximum staleness old, so
#: that its enrichment (seconds) ends within the bound: with 60 s, questions every 0.5 s for 2
#: minutes left an edit fresh after 60.9 s when it was handed out at 60 s
STALE_DISPATCH_SHARE = 0.75
#: load average per core at or above which the machine counts as busy (our own worker included)
BUSY_LOAD_PER_CORE = 4.0
#: the embedded worker runs this much nicer than the daemon: a query never waits behind S(c) for CPU
WORKER_NICE = 10
#: watchdog events for one path within this window are coalesced into one change
DEBOUNCE_SECONDS = 0.5
#: a full rescan catches what inotify missed (overflowed queues, network mounts)
RESCAN_SECONDS = 300.0
#: files larger than this are recorded as failed, not read: 2 MB of text is ~500k tokens
MAX_FILE_BYTES = 2_000_000
#: an enqueued change not finished after this long is enqueued again (worker died, broker lost it)
LEASE_SECONDS = 300.0
#: items per worker task: their records are embedded in one model call (per-item calls ran the
#: model at about half its batch speed on 2 cores); small enough that a retry redoes little
BATCH_ITEMS = 8
#: the scheduler keeps at most this many tasks in flight so refreshes can jump the queue
MAX_IN_FLIGHT = 16
#: scheduler and indexer loop periods: short enough that an edit shows within a second or two
SCHEDULER_TICK = 0.5
INDEXER_TICK = 0.2
#: the tokenizer that counts pack budgets; cl100k is what most assistants' models use
TOKENIZER = "cl100k_base"
#: the query API refuses budgets outside this range (larger packs defeat the purpose)
MIN_BUDGET = 16
MAX_BUDGET = 65_536
DEFAULT_BUDGET = 1024
#: longest accepted query text; a question, not a document
MAX_QUERY_CHARS = 8_000
#: candidates asked of the vector index before verification and ranking
CANDIDATES = 64
#: ... or one per this many tokens of budget when that is more: a large budget needs more records
#: than 64. Then the pool doubles while a pack does not fill, so small records still fill it; a
#: pool of budget/16 from the start cost 8,192-token queries on contracts (records of ~200 tokens,
#: 64 of them already fill it) p50 64 -> 188 ms for one more record per pack
CANDIDATE_TOKENS = 64
#: ... and at most this many: verifying and ranking a candidate costs ~0.1 ms
MAX_CANDIDATES = 1024
#: API listen address: loopback, a team exposes it deliberately
API_HOST = "127.0.0.1"
API_PORT = 7878
#: a crashed embedded worker is restarted after this long, doubling up to the maximum ...
WORKER_RESTART_SECONDS = 1.0
WORKER_MAX_RESTART_SECONDS = 60.0
#: ... and the delay starts again from the bottom only once a worker stayed up this long
WORKER_STABLE_SECONDS = 60.0
#: a CLI command that finds the daemon starting (home locked, API not yet up) waits this long for
#: its API: loading the model and opening the index take seconds, a first start longer
DAEMON_START_WAIT_SECONDS = 60.0
#: how long the CLI waits for a daemon that is loading (or, the first time, exporting) the model
MODEL_WAIT_SECONDS = 300.0
#: the Celery queue name, so sleepd can share a broker with other apps
QUEUE = "sleepd"
#: embedding dimension of all-MiniLM-L6-v2
EMBED_DIM = 384
#: embedding backend: onnx (onnxruntime, ~4 ms a query on one thread) when it works, else torch
EMBED_BACKEND = "auto"
#: the backends embed_backend accepts (settings checks the name without loading a model)
EMBED_BACKENDS = ("auto", "onnx", "torch")
#: enrichment profiles of a files source, of an sql source, and all of them (workers.enrich knows each)
FILE_PROFILES = ("auto", "code", "docs", "contracts")
SQL_PROFILES = ("accounts",)
PROFILES = FILE_PROFILES + SQL_PROFILES
#: the ONNX export of the model, made once per machine and user from the local weights and shared by
#: every home (setting model_cache, SLEEPD_MODEL_CACHE)
MODEL_CACHE = "~/.cache/sleepd/models"
#: files never worth indexing, whatever the include globs say
EXCLUDE = (
    ".git/**", "**/.git/**", "**/__pycache__/**", "**/node_modules/**", "**/.venv/**", "**/venv/**",
    "**/.tox/**", "**/.mypy_cache/**", "**/.pytest_cache/**", "**/.ruff_cache/**", ".sleepd/**",
    "**/.sleepd/**", "**/*.pyc", "**/.DS_Store", "**/*.egg-info/**", "dist/**", "build/**",
    # keys of synthetic aggregate items (sleepd.aggregates): a real folder of that name would collide
    "@aggregate/**",
)
#: an sql source polls its updated_at watermarks this often (an indexed range query per table)
SQL_POLL_SECONDS = 5.0
#: and hashes every item this often, to see deletes and tables without updated_at
SQL_FULL_DIFF_SECONDS = 300.0
#: items per key range in a full diff: bounds memory (an account is a few rows)
SQL_BATCH_SIZE = 500
#: a failing sql source is retried after poll_seconds, doubling up to this
SQL_MAX_BACKOFF_SECONDS = 300.0
#: one cell's text beyond this is cut in memory records (its hash still covers all of it)
SQL_MAX_CELL_CHARS = 20_000
#: keys touched per table read by one poll; more wait for the next tick
SQL_POLL_LIMIT = 5_000
#: LLM layer (only with llm_base_url and llm_model): tokens per UTC day over all sources; a runaway
#: first pass on a big repository stops here rather than on the invoice
LLM_DAILY_TOKENS = 2_000_000
#: and per source per day, so one large source cannot starve the others
LLM_SOURCE_DAILY_TOKENS = 1_000_000
#: one request's wall-clock limit; a long structured answer from a slow local model takes ~a minute
LLM_TIMEOUT_SECONDS = 60.0
#: price per 1,000 tokens, only for the cost figures (0: a local model, or unknown)
LLM_PRICE_PER_1K = 0.0
#: an item's numbered text is cut to this many tokens before it goes to the model
LLM_INPUT_TOKENS = 6_000
#: the answer's cap (max_tokens); reserved against the budget before each call
LLM_OUTPUT_TOKENS = 1_500
#: attempts per request on 429, 5xx and timeouts, then the item keeps only its deterministic records
LLM_ATTEMPTS = 4
#: first backoff in seconds, doubled each retry with full jitter, capped at LLM_MAX_BACKOFF_SECONDS
LLM_BACKOFF_SECONDS = 0.5
LLM_MAX_BACKOFF_SECONDS = 30.0
#: a token's last use is written at most this often: a ledger write per request would contend
#: with the workers' publishes on SQLite for a figure nobody needs to the second
TOKEN_TOUCH_SECONDS = 60.0
#: audit rows returned by one `sleepd audit` or GET /v1/audit unless a limit is given
AUDIT_LIMIT = 200
#: how long `sleepd refresh --wait` waits for its items to be fresh unless --timeout says
REFRESH_WAIT_SECONDS = 600.0
#: how often `sleepd refresh --wait` asks the daemon where its items stand
REFRESH_POLL_SECONDS = 0.5
#: item ids one POST /v1/refresh/state may ask about (refresh --wait asks in chunks of this)
REFRESH_STATE_MAX = 10_000
#: how often the daemon logs the first pass's progress while it moves ("first pass: 120/400 items...")
PROGRESS_LOG_SECONDS = 15.0
#: keys a lift or a dry run lists by name (the count covers them all)
LISTED_KEYS = 50
#: query latency histogram buckets (seconds): the edge index answers in ms, a cold model in ~1 s
QUERY_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: tokens-per-pack histogram buckets: the budgets people ask for, 16 to 65,536
QUERY_TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)
#: query-log rows (query text, who asked) older than this many days are deleted; 0 keeps them
QUERY_LOG_DAYS = 30.0
#: old versions whose records are kept per item (for show --version and diff); older ones are pruned
KEEP_VERSIONS = 5
#: version retention runs at most this often, and only when the machine is idle
RETENTION_SECONDS = 3600.0
#: while the machine is busy, retention looks again this often
RETENTION_RETRY_SECONDS = 30.0
#: records whose words are kept between queries (keyword scoring was half of a query's time)
TERMS_CACHE = 20_000
#: question and topic vectors a query engine keeps, by text (12 KB each as Python floats)
VECTOR_CACHE = 1024
#: the index's sparse (keyword) vector: its name beside the unnamed dense vector
SPARSE_VECTOR = "bm25"
#: a record's sparse vector reads this much of its text (a chunk or clause is far shorter)
SPARSE_CHARS = 20_000
#: a record's title is counted this many times: it names what the record is about
SPARSE_TITLE_REPEAT = 2
#: BM25 term-frequency saturation (the usual values) over a typical record's length in terms
BM25_K1 = 1.2
BM25_B = 0.75
BM25_AVG_TERMS = 256.0
#: reciprocal rank fusion's k: 60, the value of the paper (Cormack et al., 2009) and of Qdrant
RRF_K = 60
#: the weights of the dense and the sparse list in the fusion, and of the fusion in a record's score
#: (beside its cosine, ~0.2-0.8, and keyword overlap). `sleepd bench --quick --corpus contracts`,
#: recall at 256/1,024/2,048/4,096 tokens: dense only 0.483/0.852/0.962/0.994; weights 1, 1, 0.1:
#: 0.499/0.884/0.956/0.985; 1, 1, 0.05: 0.482/0.861/0.957/0.990; 0, 1, 0.1 (no dense rank):
#: 0.503/0.871/0.947/0.986
DENSE_RRF_WEIGHT = 1.0
SPARSE_RRF_WEIGHT = 1.0
FUSION_WEIGHT = 0.1
#: weight of a record's sparse (BM25) score relative to the question's best sparse hit in the final
#: rank, the counterpart of the cosine (issue 12). Reciprocal ranks alone barely separate the first
#: sparse hit from the 60th (1 vs 0.5, times FUSION_WEIGHT), while cosines add as they are: a record
#: that only the keywords place first (an account named by its customer's name, zip code and order
#: id inside a long message) sank below dozens of records nearer in embedding. sleepd's ranker over
#: the plain 512/64 chunks of tau2 retail (tune half, 20 tasks), recall at 256/1,024/4,096 tokens:
#: weight 0: .058/.071/.158; 0.3: .193/.417/.754; 0.5: .328/.698/.912; 0.8: .478/.778/.899 (BM25
#: over the same chunks: .459/.772/.941)
SPARSE_SCORE_WEIGHT = 0.5
#: raw text windows indexed beside the enriched records (workers.enrich.windows): the plain-RAG
#: baseline's chunk size and overlap, in tokens of the packing tokenizer, cut at whole lines
WINDOW_TOKENS = 512
WINDOW_OVERLAP = 64
