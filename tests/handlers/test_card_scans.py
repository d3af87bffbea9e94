"""The member card's and the coupon's QR codes read back with a real decoder (zxing-cpp), as a till would.

A regular QR code with its quiet zone, not a Micro QR (which zbar, most phone cameras and till
scanners cannot read): the decoder must report the QR Code format and give back what the counter
needs, the member number and the coupon code.
"""

from __future__ import annotations

import io

import zxingcpp
from PIL import Image

from loyalbot.loyalty.codes import normalise_coupon_code

QUIET_ZONE_MODULES = 4
SCALE = 8


def decode(png: bytes) -> tuple[str, zxingcpp.BarcodeFormat, Image.Image]:
    image = Image.open(io.BytesIO(png)).convert("L")
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1, f"one code in the picture, not {len(found)}"
    return found[0].text, found[0].format, image


def quiet_zone_is_white(image: Image.Image) -> bool:
    """The outer 4 modules on every side are blank (the standard's quiet zone)."""
    width, height = image.size
    band = QUIET_ZONE_MODULES * SCALE
    pixels = image.load()
    edges = [(x, y) for x in range(width) for y in range(height)
             if x < band or y < band or x >= width - band or y >= height - band]
    return all(pixels[x, y] == 255 for x, y in edges)


async def test_the_member_card_qr_scans_to_the_member_number(chat):
    ann = await chat.registered(1, points=40)
    await ann.send("/card")
    photo, = ann.photos()
    text, kind, image = decode(photo.media.data)
    assert kind == zxingcpp.BarcodeFormat.QRCode, f"a regular QR code, not {kind}"
    member = await ann.member()
    assert text == f"LBM:{member.member_no}"
    # What the counter does with the scanned text finds the same member.
    assert (await chat.loyalty.member_by_number(text)).id == member.id
    assert quiet_zone_is_white(image)


async def test_a_coupon_qr_scans_to_its_code(chat):
    ann = await chat.registered(2, points=500)
    await ann.send("🎁 Rewards")
    await ann.press("A coffee of your choice")
    await ann.press("✅ Confirm")
    photo, = ann.photos()
    coupon, = await chat.coupons(ann)
    text, kind, image = decode(photo.media.data)
    assert kind == zxingcpp.BarcodeFormat.QRCode, f"a regular QR code, not {kind}"
    assert normalise_coupon_code(text) == coupon.code
    assert quiet_zone_is_white(image)
