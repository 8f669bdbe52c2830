"""moto's S3 server for movrek's tests, with SigV4 and IAM enforced (run by hack/s3/up).

    python server.py --dir DIR --port PORT

moto checks signatures and IAM policies once INITIAL_NO_AUTH_ACTION_COUNT calls have been
served; the first three (create user, attach its policy, create its key) are spent here on
the administrator, and every later request, these scripts' own included, must be signed with
a key that exists. Then it creates the bucket and the principals the tests use and writes
DIR/env (KEY=VALUE lines), last DIR/endpoint. It serves until SIGTERM or SIGINT.
"""

import argparse
import json
import os
import signal
import sys
import threading

BOOTSTRAP_CALLS = 3
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(BOOTSTRAP_CALLS)

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

REGION = "us-east-1"
BUCKET = "movrek-test"
ALLOW_ALL = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
)


def client(service, endpoint, key_id, secret, token=None):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries={"max_attempts": 1}),
    )


def provision(endpoint):
    """The administrator (three unauthenticated calls), then everything else signed."""
    iam = client("iam", endpoint, "bootstrap", "bootstrap")
    iam.create_user(UserName="movrek")
    iam.put_user_policy(UserName="movrek", PolicyName="all", PolicyDocument=ALLOW_ALL)
    admin = iam.create_access_key(UserName="movrek")["AccessKey"]
    key, secret = admin["AccessKeyId"], admin["SecretAccessKey"]

    iam = client("iam", endpoint, key, secret)
    client("s3", endpoint, key, secret).create_bucket(Bucket=BUCKET)
    # A principal with a valid key and no permission at all: AccessDenied.
    iam.create_user(UserName="denied")
    denied = iam.create_access_key(UserName="denied")["AccessKey"]
    # Temporary credentials (STS AssumeRole), whose session token the tests can spoil.
    user_arn = iam.get_user(UserName="movrek")["User"]["Arn"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": "sts:AssumeRole"}
        ],
    }
    role = iam.create_role(RoleName="movrek-session", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName="movrek-session", PolicyName="all", PolicyDocument=ALLOW_ALL)
    session = client("sts", endpoint, key, secret).assume_role(
        RoleArn=role["Role"]["Arn"], RoleSessionName="movrek-test", DurationSeconds=900
    )["Credentials"]
    return {
        "MOVREK_S3_ENDPOINT": endpoint,
        "MOVREK_S3_REGION": REGION,
        "MOVREK_S3_BUCKET": BUCKET,
        "MOVREK_S3_ACCESS_KEY_ID": key,
        "MOVREK_S3_SECRET_ACCESS_KEY": secret,
        "MOVREK_S3_DENIED_ACCESS_KEY_ID": denied["AccessKeyId"],
        "MOVREK_S3_DENIED_SECRET_ACCESS_KEY": denied["SecretAccessKey"],
        "MOVREK_S3_SESSION_ACCESS_KEY_ID": session["AccessKeyId"],
        "MOVREK_S3_SESSION_SECRET_ACCESS_KEY": session["SecretAccessKey"],
        "MOVREK_S3_SESSION_TOKEN": session["SessionToken"],
    }


def write_atomically(path, text):
    tmp = path + ".partial"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    try:
        server.start()
    except OSError as error:  # the port was taken meanwhile: hack/s3/up retries
        print(f"s3/server.py: cannot bind 127.0.0.1:{args.port}: {error}", file=sys.stderr)
        sys.exit(2)
    endpoint = f"http://127.0.0.1:{args.port}"
    env = provision(endpoint)
    write_atomically(
        os.path.join(args.dir, "env"), "".join(f"{k}={v}\n" for k, v in env.items())
    )
    write_atomically(os.path.join(args.dir, "endpoint"), endpoint + "\n")
    print(f"s3/server.py: serving on {endpoint}", file=sys.stderr, flush=True)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(3600):
        pass
    server.stop()


if __name__ == "__main__":
    main()
