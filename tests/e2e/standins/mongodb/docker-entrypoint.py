#!/opt/venv/bin/python
"""Stand-in for the official mongo image's entrypoint, running SecantusDB (MongoDB wire protocol).

Honours what the chart relies on: mongod-style ``--bind_ip_all`` and ``--port N`` (other mongod flags are
ignored); on an empty /data/db, start without auth on loopback, create MONGO_INITDB_ROOT_USERNAME as root,
run /docker-entrypoint-initdb.d/, then serve with ``--auth``. There is no JavaScript engine here: a ``*.js``
init script is honoured for the chart's contract only (APP_USERNAME gets readWrite on APP_DATABASE with
APP_PASSWORD, what the chart's 10-app-user.js does), and the stand-in says so in its log.
"""

import glob
import os
import subprocess
import sys
import time

import pymongo

args = sys.argv[1:]
port = int(args[args.index("--port") + 1]) if "--port" in args else 27017
data = "/data/db"
marker = os.path.join(data, ".stand-in-initialized")
server = ["/opt/venv/bin/secantusd-py", "--storage-path", data, "--port", str(port)]
env = os.environ


def local_client() -> pymongo.MongoClient:
    return pymongo.MongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=500
    )


def wait_until_up(proc: subprocess.Popen) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"mongodb stand-in: secantusd-py exited with {proc.returncode}")
        try:
            local_client().admin.command("ping")
            return
        except pymongo.errors.PyMongoError:
            time.sleep(0.2)
    sys.exit("mongodb stand-in: secantusd-py did not answer")


root_user = env.get("MONGO_INITDB_ROOT_USERNAME")
if not os.path.exists(marker):
    proc = subprocess.Popen([*server, "--host", "127.0.0.1"])
    wait_until_up(proc)
    client = local_client()
    if root_user:
        client.admin.command(
            "createUser",
            root_user,
            pwd=env["MONGO_INITDB_ROOT_PASSWORD"],
            roles=[{"role": "root", "db": "admin"}],
        )
        print(f"mongodb stand-in: created root user {root_user}", flush=True)
    for script in sorted(glob.glob("/docker-entrypoint-initdb.d/*")):
        if script.endswith(".js") and env.get("APP_USERNAME"):
            db = client[env["APP_DATABASE"]]
            if not db.command("usersInfo", env["APP_USERNAME"])["users"]:
                db.command(
                    "createUser",
                    env["APP_USERNAME"],
                    pwd=env["APP_PASSWORD"],
                    roles=[{"role": "readWrite", "db": env["APP_DATABASE"]}],
                )
            print(
                f"mongodb stand-in: {script} honoured as the chart's contract (no JS engine): "
                f"user {env['APP_USERNAME']} readWrite on {env['APP_DATABASE']}",
                flush=True,
            )
        else:
            print(f"mongodb stand-in: ignoring {script}", flush=True)
    proc.terminate()
    proc.wait()
    with open(marker, "w") as f:
        f.write("ok\n")
host = "0.0.0.0" if "--bind_ip_all" in args else "127.0.0.1"
# --standalone: a plain mongod (no --replSet) is standalone; SecantusDB otherwise advertises a replica set
# whose member address is the bind address (0.0.0.0), which drivers then try to reach.
os.execv(server[0], [*server, "--host", host, "--standalone", *(["--auth"] if root_user else [])])
