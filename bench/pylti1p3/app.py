"""The pylti1p3 side of the lmsbridge load benchmark (bench/run.sh, docs/BENCHMARKS.md).

A Flask tool as pylti1p3's documentation and its Flask example build one: OIDC login at
/login, launch at /launch, a cache-backed launch data storage (Redis, shared by the gunicorn
workers, so a login served by one worker can be finished by the other) and the platform's
public key cached in the same storage. pylti1p3's state check (cookie) and nonce check
(stored at login, looked up at launch) stay on. A successful launch stores the launch data
under a launch id (pylti1p3's own handoff) and redirects to the product with ?launch_id=.

Configuration comes from the environment (bench/run.sh sets it): BENCH_ISSUER,
BENCH_CLIENT_ID, BENCH_DEPLOYMENT_ID, BENCH_AUTH_URL, BENCH_TOKEN_URL, BENCH_JWKS_URL,
BENCH_LAUNCH_URL, BENCH_PRODUCT_URL, BENCH_REDIS_URL, BENCH_CACHE_PREFIX.
"""

import os
from urllib.parse import urlencode

from flask import Flask, redirect
from flask_caching import Cache
from pylti1p3.contrib.flask import (
    FlaskCacheDataStorage,
    FlaskMessageLaunch,
    FlaskOIDCLogin,
    FlaskRequest,
)
from pylti1p3.exception import LtiException, OIDCException
from pylti1p3.tool_config import ToolConfDict

env = os.environ

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.urandom(32),
    CACHE_TYPE="RedisCache",
    CACHE_REDIS_URL=env.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    CACHE_KEY_PREFIX=env.get("BENCH_CACHE_PREFIX", "lmsbridge-bench-"),
    CACHE_DEFAULT_TIMEOUT=600,
)
cache = Cache(app)

TOOL_CONF = ToolConfDict(
    {
        env["BENCH_ISSUER"]: [
            {
                "default": True,
                "client_id": env.get("BENCH_CLIENT_ID", "bench"),
                "auth_login_url": env["BENCH_AUTH_URL"],
                "auth_token_url": env["BENCH_TOKEN_URL"],
                "key_set_url": env["BENCH_JWKS_URL"],
                "key_set": None,
                "deployment_ids": [env.get("BENCH_DEPLOYMENT_ID", "d1")],
            }
        ]
    }
)
LAUNCH_URL = env["BENCH_LAUNCH_URL"]
PRODUCT_URL = env["BENCH_PRODUCT_URL"]


def storage():
    return FlaskCacheDataStorage(cache)


@app.get("/health")
def health():
    return {"status": "ok"}


@app.route("/login", methods=["GET", "POST"])
def login():
    try:
        oidc = FlaskOIDCLogin(FlaskRequest(), TOOL_CONF, launch_data_storage=storage())
        return oidc.redirect(LAUNCH_URL)
    except OIDCException as e:
        return {"error": str(e)}, 400


@app.post("/launch")
def launch():
    data_storage = storage()
    message_launch = FlaskMessageLaunch(
        FlaskRequest(), TOOL_CONF, launch_data_storage=data_storage
    )
    message_launch.set_public_key_caching(data_storage, cache_lifetime=7200)
    try:
        message_launch.get_launch_data()  # runs every check and stores the launch
    except LtiException as e:
        return {"error": str(e)}, 401
    query = urlencode({"launch_id": message_launch.get_launch_id()})
    return redirect(f"{PRODUCT_URL}?{query}", code=302)
