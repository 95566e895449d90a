"""API keys (admin only): create, list, revoke. A key's secret is shown once, at creation."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from latfarm.services.store.models import ApiKey

from ..auth import Principal, create_key, require, revoke
from ..deps import db
from ..schemas import KeyCreate, KeyCreated, KeyOut

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", status_code=201, response_model=KeyCreated)
def new_key(body: KeyCreate, session: Session = Depends(db), _: Principal = Depends(require("keys"))) -> KeyCreated:
    """Create an API key; the response holds its secret, shown only here (409 when an unrevoked key has the
    name)."""
    row, secret = create_key(session, body.name, list(body.scopes))
    session.commit()
    return KeyCreated(id=row.id, name=row.name, scopes=row.scopes, key=secret)


@router.get("", response_model=list[KeyOut])
def list_keys(session: Session = Depends(db), _: Principal = Depends(require("keys"))) -> list[ApiKey]:
    """All API keys, without secrets."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


@router.delete("/{key_id}", status_code=204)
def revoke_key(
    key_id: int, request: Request, session: Session = Depends(db), _: Principal = Depends(require("keys"))
) -> None:
    """Revoke a key (404 when unknown; 409 for the last admin key, which would lock every admin out); requests with
    it get 401 from then on (through another server replica, within ``auth.KEY_TTL_S``)."""
    revoke(session, key_id)
    session.commit()
    request.app.state.principals.forget_key(key_id)
