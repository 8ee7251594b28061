"""The API token as an SSM SecureString, through the AWS SDK (boto3): `make api-token` and
`make api-token-show`, so that deploying needs no AWS CLI.

put NAME [--rotate]: puts a fresh random token (64 hex characters) unless one is there already
                     (--rotate replaces it); says what it did, never the value.
show NAME:           prints the token, for the operator's own shell (TOKEN=$(make -s api-token-show)).
"""

import os
import secrets
import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError


def put(ssm, name: str, rotate: bool) -> str:
    if not rotate:
        try:
            ssm.get_parameter(Name=name)
            return f"{name} already holds a token: kept (ROTATE=1 replaces it)"
        except ssm.exceptions.ParameterNotFound:
            pass
    ssm.put_parameter(Name=name, Type="SecureString", Value=secrets.token_hex(32), Overwrite=rotate)
    return f"{name}: a new random token put as a SecureString; `make api-token-show` prints it"


def show(ssm, name: str) -> str:
    return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] not in ("put", "show"):
        print(__doc__, file=sys.stderr)
        return 2
    name = argv[2]
    try:
        # AWS_REGION as the other AWS SDKs read it (boto3 reads only AWS_DEFAULT_REGION).
        ssm = boto3.client("ssm", region_name=os.environ.get("AWS_REGION") or None)
        print(put(ssm, name, "--rotate" in argv[3:]) if argv[1] == "put" else show(ssm, name))
    except (BotoCoreError, ClientError) as err:
        print(f"api-token: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
