// Every error code Cachet answers with, its HTTP status and what it means. The one list: a
// UserError takes its status from here, the OpenAPI document lists each operation's codes from
// here, and README's error table is made from this file (npm run docs:errors). A code is stable once published: programs match
// on it. The message that comes with it says what to fix, for a person.

export type ErrorStatus = 400 | 401 | 403 | 404 | 408 | 409 | 413 | 415 | 429 | 500 | 503;

export interface ErrorEntry {
  status: ErrorStatus;
  /** what the code means; the message of each error says the particulars and the fix */
  description: string;
}

export const ERROR_CATALOGUE = {
  // ---------------------------------------------------------------- the request itself
  invalid_request: { status: 400, description: 'the body, query or form fields do not validate; the message names each field and what is wrong' },
  invalid_json: { status: 400, description: 'the body is not valid JSON' },
  invalid_body: { status: 400, description: 'the body is not a JSON object' },
  bad_request: { status: 400, description: 'the HTTP request is malformed (e.g. aborted, or a body of the wrong length)' },
  request_timeout: { status: 408, description: 'the request body arrived slower than the minimum rate; send it faster' },
  unsupported_encoding: { status: 415, description: 'the body uses a content encoding or charset the service does not read' },
  bad_multipart: { status: 400, description: 'the multipart/form-data upload is malformed' },
  payload_too_large: { status: 413, description: 'the body, or one uploaded file, is over the byte limit (16 MiB by default)' },
  unknown_route: { status: 404, description: 'no such route; GET /openapi.json lists them' },
  web_page_missing: { status: 404, description: 'the web page was not installed with this service; the API under /v1 works' },

  // ---------------------------------------------------------------- API keys and files
  unauthorized: { status: 401, description: 'no API key: send "Authorization: Bearer <key>" (only when the service has API keys)' },
  invalid_api_key: { status: 401, description: 'the API key is not one the service knows' },
  forbidden: { status: 403, description: "the API key's role is below the one the operation needs (x-cachet-role)" },
  path_not_allowed: { status: 403, description: "a file the request names is outside the service's read roots (CACHET_READ_ROOTS)" },

  // ---------------------------------------------------------------- images and predictions
  missing_images: { status: 400, description: 'a predict request with no image, or with both "image" and "images"' },
  too_many_images: { status: 413, description: 'more images in one request than the limit (64 by default): split the request' },
  bad_image: { status: 400, description: 'an image that cannot be read or decoded (not JPEG, PNG or WebP, truncated, empty, not base64)' },
  image_too_large: { status: 413, description: 'an image over the pixel limit, known from its header before it is decoded' },
  invalid_theta: { status: 400, description: 'θ is not a number in [0, 1000]' },
  invalid_lambda: { status: 400, description: 'λ is not a number in [0, 1]' },
  invalid_k: { status: 400, description: 'k is not an integer in [1, 2000]' },
  invalid_efSearch: { status: 400, description: 'efSearch is not an integer in [8, 5000]' },

  // ---------------------------------------------------------------- caches and their models
  invalid_cache_definition: { status: 400, description: 'the cache definition does not validate' },
  cache_exists: { status: 409, description: 'a cache of that name exists: pick another name' },
  unknown_cache: { status: 404, description: 'no cache of that name' },
  cache_unavailable: { status: 409, description: 'the cache exists but could not be loaded; the message says why' },
  cache_damaged: {
    status: 503,
    description:
      "the cache's stored data is damaged and no intact copy exists: the message says what was lost; import an export, or delete the cache and index again",
  },
  cache_busy: { status: 409, description: 'the cache has unfinished jobs: wait for them before deleting it' },
  empty_cache: { status: 409, description: 'the cache holds no items yet' },
  bad_model: { status: 400, description: 'the model file is missing, unreadable, or not an ONNX model onnxruntime can load' },
  bad_model_spec: { status: 400, description: "the model spec (or its overrides) does not fit the model's inputs and outputs" },
  bad_key_layers: { status: 400, description: 'the key layers are not usable: empty, repeated, or not per-image tensors' },
  unknown_layer: { status: 400, description: 'a key layer or candidate layer is not a tensor of the model; the message lists the nearest names' },
  bad_index_type: { status: 400, description: 'the index type is not one of auto, exact, hnsw' },
  bad_index_option: { status: 400, description: 'an index option is out of range' },
  snapshot_model_mismatch: { status: 409, description: "the cache's snapshot was built with another model file than the one its definition names" },
  snapshot_layers_mismatch: { status: 409, description: "the cache's snapshot has other key layers than its definition" },
  key_dimension_mismatch: { status: 409, description: "the cache's key log holds keys of another dimension than its model and key layers give" },
  starting: {
    status: 503,
    description: 'the service is starting and opens its caches (GET /readyz says how far): retry after Retry-After seconds',
  },
  replica_behind: { status: 503, description: 'the change is logged, and this replica has not applied it yet; do not resend it' },

  // ---------------------------------------------------------------- items
  url_not_allowed: {
    status: 403,
    description: 'the URL is not under a prefix this service fetches from (URL sources are off unless the operator lists prefixes)',
  },
  bad_archive: { status: 400, description: 'the uploaded archive is not a Cachet cache export, or a file in it does not match its recorded checksum' },
  archive_too_large: { status: 413, description: "the archive is over this service's import limit (--max-import-bytes)" },
  embedded_only: { status: 409, description: 'this operation is available in embedded mode only' },
  distributed_only: { status: 409, description: 'this needs distributed mode (REDIS_URL): a cache of several shards, for one' },
  per_shard: {
    status: 409,
    description: 'a cache of several shards does this one shard at a time: address shard s as "<cache>#<s>" (URL-encoded %23) on a replica that holds it',
  },
  shard_unavailable: {
    status: 503,
    description: 'no healthy replica serves a shard of the cache (the message names them); send "partial": true to be answered by the shards that are there',
  },
  no_snapshot: { status: 409, description: 'this replica has written no snapshot of the cache yet (a peer asked for its stored one)' },
  bad_source: { status: 400, description: "a job's source (folder, manifest, inline items) cannot be read or lists nothing usable" },
  missing_label: { status: 400, description: 'an item without a label where one is needed (index, eval and tune jobs)' },
  label_out_of_range: { status: 400, description: "a label that is not one of the model's classes (by name or index)" },
  bad_label: { status: 400, description: 'a label that cannot be stored' },
  bad_item_id: { status: 400, description: 'an item id that is empty or too long' },
  bad_key: { status: 400, description: 'a key that is not finite or has the wrong dimension' },
  bad_batch: { status: 400, description: "a batch of images whose size does not match the model's input" },
  unknown_item: { status: 404, description: 'the cache holds no item with that id' },
  no_image: { status: 404, description: 'the item was indexed from inline bytes: Cachet keeps no copy of its image' },
  image_unavailable: { status: 404, description: "the item's image can no longer be read from where it was indexed from" },

  // ---------------------------------------------------------------- jobs
  unknown_job: { status: 404, description: 'no job with that id' },
  job_not_finished: { status: 409, description: 'the job has not completed: its report comes when it does' },
  no_such_report: { status: 400, description: 'this job has no report in that format' },
  too_many_jobs: { status: 429, description: 'as many unfinished jobs as the cache (or the service, for layers jobs) takes: retry after Retry-After seconds' },
  no_candidates: { status: 400, description: 'the layer advisor has no candidate layer to score' },
  memory_over_cap: { status: 400, description: "maxMemoryBytes is over the service's cap for layers jobs" },
  too_much_memory: { status: 400, description: 'the layers job would need more memory than its budget; the message says what to shrink' },

  // ---------------------------------------------------------------- the service
  busy: { status: 429, description: 'this process serves as many predict requests as it takes at once: retry after Retry-After seconds' },
  internal: { status: 500, description: 'a fault of the service; it logged the details under the request id' },

  // ---------------------------------------------------------------- configuration (at start-up, not over HTTP)
  bad_api_keys: { status: 400, description: 'CACHET_API_KEYS or the keys file is malformed (start-up)' },
  bad_limit: { status: 400, description: 'a limit is not a positive integer (start-up)' },
} as const satisfies Record<string, ErrorEntry>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export const ERROR_CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

export const statusOf = (code: ErrorCode): ErrorStatus => ERROR_CATALOGUE[code].status;

export const isErrorCode = (code: unknown): code is ErrorCode => typeof code === 'string' && Object.hasOwn(ERROR_CATALOGUE, code);
