# home: filled by the pages of this area. Keys are the same in every language.
home-welcome = Welcome, { $name }
home-department = Department
home-roles = Roles
