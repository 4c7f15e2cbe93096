"""Babou's documented limits: plain constants shared by the hook, the input checks and the emulator.

Nothing here imports Airflow or the rest of the package, so the emulator stays Airflow-free.
"""

from __future__ import annotations

NAME_MAX = 30
"""Longest project or chapter name, in characters (names need at least one)."""
DESCRIPTION_MAX = 1000
"""Longest project description, in characters."""
PROMPT_MAX = 5000
"""Longest prompt content, in characters (prompts need at least one)."""
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
"""Largest asset upload (100 MiB)."""
API_KEY_PREFIX = "sk-bab-"
"""Every Babou API key starts with this."""
SUPPORTED_CONTENT_TYPES: tuple[str, ...] = (
    "video/mp4",
    "video/quicktime",
    "video/x-msvideo",
    "video/webm",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/svg+xml",
    "audio/mpeg",
    "audio/wav",
    "audio/ogg",
    "audio/aac",
)
"""The MIME types Babou accepts for assets, in the order the docs list them."""
