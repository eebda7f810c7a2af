// The GraphQL client over HTTP: POST /graphql with the session cookie, and the audio upload.

export class ApiError extends Error {
  /** code: the GraphQL `extensions.code` (or NETWORK / HTTP); field: the input it names. */
  constructor(code, message, extensions = {}) {
    super(message);
    this.code = code;
    this.field = extensions.field ?? null;
    this.extensions = extensions;
  }
}

let onUnauthenticated = () => {};

/** Called when the session has ended (the app shows the login page). */
export function whenSignedOut(callback) {
  onUnauthenticated = callback;
}

async function post(url, init) {
  try {
    return await fetch(url, { credentials: "same-origin", ...init });
  } catch {
    throw new ApiError("NETWORK", "network error");
  }
}

/** Runs one operation; resolves to its data or throws the first error as ApiError. */
export async function gql(query, variables = {}) {
  const response = await post("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError("HTTP", `HTTP ${response.status}`);
  }
  if (body.errors && body.errors.length) {
    const first = body.errors[0];
    const extensions = first.extensions || {};
    const error = new ApiError(extensions.code || "INTERNAL_SERVER_ERROR", first.message, extensions);
    if (error.code === "UNAUTHENTICATED" && !query.includes("login(")) onUnauthenticated();
    throw error;
  }
  return body.data;
}

/** POST /api/uploads with the raw file; resolves to { id, durationMs, … }. */
export async function uploadAudio(file) {
  const response = await post("/api/uploads", {
    method: "POST",
    headers: { "Content-Type": "audio/wav" },
    body: file,
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const { error, code, ...rest } = body;
    throw new ApiError(code || statusCode(response.status), error || `HTTP ${response.status}`, rest);
  }
  return body;
}

function statusCode(status) {
  return (
    { 400: "BAD_USER_INPUT", 401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND",
      409: "CONFLICT", 413: "TOO_LARGE", 429: "TOO_MANY_ATTEMPTS" }[status] || "HTTP"
  );
}
