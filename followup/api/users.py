"""Users of the caller's clinic (admins only)."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import select

from followup import audit
from followup.api.schemas import UserCreateSchema, UserSchema
from followup.auth import api_user, roles_required
from followup.db import db
from followup.models import Clinic, User
from followup.records.accounts import AccountError, create_user

blp = Blueprint("api_users", __name__, description="Clinic users (admin)")


@blp.route("/users")
class Users(MethodView):
    @roles_required("admin")
    @blp.response(200, UserSchema(many=True))
    def get(self):
        """Users of the caller's clinic."""
        user = api_user()
        return db.session.execute(select(User).where(User.clinic_id == user.clinic_id).order_by(User.id)).scalars()

    @roles_required("admin")
    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserSchema)
    def post(self, body):
        """Add a user to the caller's clinic."""
        admin = api_user()
        try:
            user = create_user(db.session.get(Clinic, admin.clinic_id), **body)
        except AccountError as exc:
            db.session.rollback()
            abort(exc.status, message=str(exc))
        audit.record("create_user", "user", user.id, user=admin, commit=False)
        db.session.commit()
        return user
