"""Run one fake by hand: ``cd tests && python -m fakes dingtalk --token t1 --secret SEC1``.

Prints the URL to configure and every request it receives; Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from fakes import FakeDingTalk, FakeFeishu, FakeSlack, FakeTelegram, FakeWeCom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", choices=["dingtalk", "wecom", "slack", "feishu", "telegram"])
    parser.add_argument("--token", default="token", help="access token / key / hook path / bot token")
    parser.add_argument("--secret", default="", help="signing secret (dingtalk, feishu)")
    parser.add_argument("--keyword", action="append", default=[], help="required keyword (dingtalk, feishu)")
    parser.add_argument("--chat", default="1", help="chat id (telegram)")
    args = parser.parse_args()
    robot = {"secret": args.secret, "keywords": args.keyword}
    fake, url = {
        "dingtalk": lambda: (f := FakeDingTalk({args.token: robot}), lambda: f.send_url(args.token)),
        "wecom": lambda: (f := FakeWeCom({args.token}), lambda: f.send_url(args.token)),
        "slack": lambda: (f := FakeSlack({args.token}), lambda: f.send_url(args.token)),
        "feishu": lambda: (f := FakeFeishu({args.token: robot}), lambda: f.send_url(args.token)),
        "telegram": lambda: (f := FakeTelegram({args.token}, {args.chat}), lambda: f.url),
    }[args.service]()

    async def serve() -> None:
        await fake.start()
        print(f"{args.service} fake listening; URL: {url()}", flush=True)
        seen = 0
        try:
            while True:
                await asyncio.sleep(0.2)
                for rec in fake.received[seen:]:
                    print(json.dumps({"path": rec.path, "status": rec.status, "answer": rec.answer, "body": rec.json},
                                     ensure_ascii=False), flush=True)
                seen = len(fake.received)
        finally:
            await fake.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
