"""GraphQL enums, the same closed sets the database stores."""

import strawberry

from api import models

Role = strawberry.enum(models.Role, name="Role")
Language = strawberry.enum(models.Language, name="Language")
VerificationState = strawberry.enum(models.VerificationState, name="VerificationState")
CommandStatus = strawberry.enum(models.CommandStatus, name="CommandStatus")
AnnouncementKind = strawberry.enum(models.AnnouncementKind, name="AnnouncementKind")
AnnouncementSource = strawberry.enum(models.AnnouncementSource, name="AnnouncementSource")
AnnouncementStatus = strawberry.enum(models.AnnouncementStatus, name="AnnouncementStatus")
BroadcastMode = strawberry.enum(models.BroadcastMode, name="BroadcastMode")
BroadcastStatus = strawberry.enum(models.BroadcastStatus, name="BroadcastStatus")
CallOutcome = strawberry.enum(models.CallOutcome, name="CallOutcome")
PbxUserState = strawberry.enum(models.PbxUserState, name="PbxUserState")
